// Real client libraries against Manifold, driven by tests/clients.rs (NODE_PATH points at
// .tools/node_modules). Each mode prints one line per event it sees, then exits after `n`.
//
//   viem-blocks   WS_URL N          viem's webSocket transport, watchBlocks (eth_subscribe)
//   ethers-blocks WS_URL N          ethers v6 WebSocketProvider, provider.on("block")
//   ethers-logs   HTTP_URL ADDR N   ethers v6 JsonRpcProvider, provider.on({address}):
//                                   eth_newFilter polled with eth_getFilterChanges
//   viem-logs     HTTP_URL ADDR N   viem's http transport, watchEvent({address}): the same,
//                                   made again at the current block on "filter not found"
"use strict";

const [mode, url, ...rest] = process.argv.slice(2);
const out = (line) => process.stdout.write(line + "\n");
const fail = (e) => {
  process.stderr.write(`error: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
};
process.on("unhandledRejection", fail);
// Bounded: a test that never gets its events ends here.
setTimeout(() => fail("timed out"), 60_000).unref();

async function viemBlocks(n) {
  const { createPublicClient, webSocket } = require("viem");
  const client = createPublicClient({ transport: webSocket(url) });
  let seen = 0;
  client.watchBlocks({
    onBlock: (b) => {
      out(`block ${b.number} ${b.hash} ${b.parentHash}`);
      if (++seen >= n) process.exit(0);
    },
    onError: fail,
  });
  out("ready");
}

async function ethersBlocks(n) {
  const { WebSocketProvider } = require("ethers");
  const provider = new WebSocketProvider(url);
  let seen = 0;
  await provider.on("block", (number) => {
    out(`block ${number}`);
    if (++seen >= n) process.exit(0);
  });
  out("ready");
}

async function ethersLogs(address, n) {
  const { JsonRpcProvider } = require("ethers");
  const provider = new JsonRpcProvider(url, undefined, { staticNetwork: true, pollingInterval: 250 });
  if (process.env.CLIENTS_DEBUG) provider.on("debug", (e) => process.stderr.write(JSON.stringify(e, (k, v) => typeof v === "bigint" ? v.toString() : v) + "\n"));
  let seen = 0;
  await provider.on({ address }, (log) => {
    out(`log ${log.blockNumber} ${log.transactionHash}`);
    if (++seen >= n) process.exit(0);
  });
  out("ready");
}

async function viemLogs(address, n) {
  const { createPublicClient, http } = require("viem");
  const client = createPublicClient({ transport: http(url), pollingInterval: 250 });
  let seen = 0;
  client.watchEvent({
    address,
    onLogs: (logs) => {
      for (const log of logs) {
        out(`log ${log.blockNumber} ${log.transactionHash}`);
        if (++seen >= n) process.exit(0);
      }
    },
    onError: fail,
  });
  out("ready");
}

const modes = {
  "viem-blocks": () => viemBlocks(Number(rest[0])),
  "ethers-blocks": () => ethersBlocks(Number(rest[0])),
  "ethers-logs": () => ethersLogs(rest[0], Number(rest[1])),
  "viem-logs": () => viemLogs(rest[0], Number(rest[1])),
};
if (!modes[mode]) fail(`unknown mode ${mode}`);
modes[mode]().catch(fail);
