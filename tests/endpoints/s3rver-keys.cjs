// Preloaded into s3rver (node --require) by tests/endpoints/s3rver.py: registers extra access key pairs on
// s3rver's one built-in account, next to its hard-coded S3RVER/S3RVER, so the suite's usual testing/testing
// credentials work. s3rver 3.7.1 has no command-line option for this; its account model is the only way in.
// CEDAR_S3_S3RVER_KEYS="access:secret[,access:secret...]"
'use strict';

const fs = require('fs');
const path = require('path');

const script = fs.realpathSync(process.argv[1]); // .../node_modules/s3rver/bin/s3rver.js
const accountModule = path.join(path.dirname(path.dirname(script)), 'lib', 'models', 'account.js');
if (!fs.existsSync(accountModule)) {
  throw new Error(`s3rver-keys.cjs: ${script} is not s3rver's bin/s3rver.js (no ${accountModule})`);
}
const { DUMMY_ACCOUNT } = require(accountModule);
for (const pair of (process.env.CEDAR_S3_S3RVER_KEYS || '').split(',').filter(Boolean)) {
  const colon = pair.indexOf(':');
  DUMMY_ACCOUNT.createKeyPair(pair.slice(0, colon), pair.slice(colon + 1));
}
