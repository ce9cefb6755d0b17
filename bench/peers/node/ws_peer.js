// The official Node SDK's long-connection client with a no-op handler.
//
// Run by the stream benchmark as its own process, so its CPU time and memory
// are read from /proc like lark-service's. Settings come from the same
// variables the service reads: APP_ID, APP_SECRET, LARK_DOMAIN.
'use strict';

let lark;
try {
  lark = require('@larksuiteoapi/node-sdk');
} catch (e) {
  console.error(`@larksuiteoapi/node-sdk is not installed (${e.message}); run bench/peers/setup.sh`);
  process.exit(1);
}

const dispatcher = new lark.EventDispatcher({}).register({
  'im.message.receive_v1': async () => undefined,
});
const client = new lark.WSClient({
  appId: process.env.APP_ID,
  appSecret: process.env.APP_SECRET,
  domain: process.env.LARK_DOMAIN,
  loggerLevel: lark.LoggerLevel.error,
});
client.start({ eventDispatcher: dispatcher });
