// Real namespaces, veth pairs and nftables rules: runs as root with ip and nft (CI), skipped elsewhere. Each test
// claims its own address block (address-blocks.ts), as a runtime does, so it never meets a mesh running beside it.
import assert from "node:assert/strict";
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import { test } from "node:test";
import { promisify } from "node:util";
import { type AddressBlock, claimAddressBlock } from "./address-blocks.ts";
import { cleanupLeftovers, createIsolation, type Isolation, isolationSupport } from "./isolation.ts";
import { belongsToBlock } from "./isolation-layout.ts";

const support = await isolationSupport();
const skip = support.ok ? false : support.reason;
const DIAL_TIMEOUT_MS = 5000;
const execFileAsync = promisify(execFile);

// An echo server that greets first, so that a dial sees bytes from both sides.
const SERVER = `
const [host, name] = process.argv.slice(1);
const server = require("node:net").createServer((s) => { s.write("hello from " + name + "\\n"); s.pipe(s); s.on("error", () => {}); });
server.listen(0, host, () => process.stdout.write(JSON.stringify({ pid: process.pid, port: server.address().port }) + "\\n"));
`;

// Dials, sends "ping", waits for the greeting and the echo; prints what happened.
const CLIENT = `
const [host, port, timeout] = process.argv.slice(1);
const s = require("node:net").connect({ host, port: Number(port) });
let got = "", done = false;
const out = (r) => { if (done) return; done = true; clearTimeout(timer); process.stdout.write(JSON.stringify(r)); s.destroy(); };
const timer = setTimeout(() => out({ ok: false, code: "TIMEOUT" }), Number(timeout));
s.on("connect", () => s.write("ping\\n"));
s.on("data", (d) => { got += d; if (got.includes("ping\\n") && got.includes("hello")) out({ ok: true, got }); });
s.on("error", (e) => out({ ok: false, code: e.code }));
`;

interface DialResult {
  ok: boolean;
  code?: string;
  got?: string;
}

interface Server {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly address: string;
  readonly port: number;
}

function claim(clusters: number): AddressBlock {
  const block = claimAddressBlock(clusters);
  assert.ok(block, "no free address block");
  return block;
}

async function startServer(iso: Isolation, cluster: string, host = 1): Promise<Server> {
  const address = iso.address(cluster, host);
  const argv = iso.command(cluster, [process.execPath, "-e", SERVER, address, cluster]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
  let line = "";
  for await (const chunk of child.stdout!) {
    line += chunk;
    if (line.includes("\n")) break;
  }
  assert.ok(line.includes("\n"), `the server in ${cluster} did not start`);
  const { pid, port } = JSON.parse(line) as { pid: number; port: number };
  return { child, pid, address, port };
}

/** Dials `server` from inside `cluster`'s namespace, or from the root namespace (this process). */
async function dial(server: Server, from?: { iso: Isolation; cluster: string }): Promise<DialResult> {
  if (from === undefined) return dialHere(server);
  const argv = from.iso.command(from.cluster, [
    process.execPath,
    "-e",
    CLIENT,
    server.address,
    String(server.port),
    String(DIAL_TIMEOUT_MS),
  ]);
  // Not execFileSync: a server in this process (the host's) must keep answering meanwhile.
  const { stdout } = await execFileAsync(argv[0]!, argv.slice(1), {
    encoding: "utf8",
    timeout: DIAL_TIMEOUT_MS * 2,
  });
  return JSON.parse(stdout) as DialResult;
}

function dialHere(server: Server): Promise<DialResult> {
  return new Promise((resolve) => {
    const s = net.connect({ host: server.address, port: server.port });
    let got = "";
    const timer = setTimeout(() => done({ ok: false, code: "TIMEOUT" }), DIAL_TIMEOUT_MS);
    const done = (r: DialResult) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    s.on("connect", () => s.write("ping\n"));
    s.on("data", (d) => {
      got += d;
      if (got.includes("ping\n") && got.includes("hello")) done({ ok: true, got });
    });
    s.on("error", (e: NodeJS.ErrnoException) => done({ ok: false, code: e.code }));
  });
}

async function stop(servers: readonly Server[]): Promise<void> {
  await Promise.all(
    servers.map(async (s) => {
      if (s.child.exitCode !== null || s.child.signalCode !== null) return;
      const exited = once(s.child, "exit");
      s.child.kill("SIGKILL");
      await exited;
    }),
  );
}

function json<T>(argv: string[]): T {
  const out = execFileSync("ip", ["-j", ...argv], { encoding: "utf8" }).trim();
  return (out === "" ? [] : JSON.parse(out)) as T;
}

/** What of block `base` is on the host: namespaces, its link, routes into its ranges. */
function traces(base: number, ranges: readonly string[]): string[] {
  const namespaces = json<{ name: string }[]>(["netns", "list"])
    .map((n) => n.name)
    .filter((n) => belongsToBlock(n, base));
  const links = json<{ ifname: string }[]>(["link", "show"])
    .map((l) => l.ifname)
    .filter((n) => n === `isthmus-${base}`);
  const routes = json<{ dst: string; type?: string }[]>(["route", "show"])
    .filter((r) => ranges.includes(r.dst) && r.type !== "blackhole")
    .map((r) => `route ${r.dst}`);
  return [...namespaces, ...links, ...routes];
}

test("clusters reach each other, a private one only by dialling out; the root namespace reaches all", {
  skip,
}, async () => {
  const block = claim(3);
  const servers: Server[] = [];
  try {
    const iso = await createIsolation({
      base: block.base,
      clusters: [
        { name: "a", index: 0, private: false },
        { name: "b", index: 1, private: false },
        { name: "p", index: 2, private: true },
      ],
    });
    const a = await startServer(iso, "a");
    const b = await startServer(iso, "b", 254);
    const p = await startServer(iso, "p");
    servers.push(a, b, p);
    // ip netns exec execs: the supervisor's pid is the program's.
    assert.equal(a.pid, a.child.pid);
    assert.equal(b.address, `198.18.${block.base - 20 + 1}.254`); // g = 16k + 1, 16k = B - 20

    const fromA = { iso, cluster: "a" };
    const fromP = { iso, cluster: "p" };
    assert.deepEqual(await dial(b, fromA), { ok: true, got: "hello from b\nping\n" });
    assert.deepEqual(await dial(a, fromA), { ok: true, got: "hello from a\nping\n" });
    // Refused by the hub at once, not left to time out (its server is up: the root namespace reaches it below).
    for (let i = 0; i < 10; i++) assert.deepEqual(await dial(p, fromA), { ok: false, code: "ECONNREFUSED" });
    assert.deepEqual(await dial(p, { iso, cluster: "b" }), { ok: false, code: "ECONNREFUSED" });
    // The private cluster dials out, and its connections carry bytes both ways.
    assert.deepEqual(await dial(a, fromP), { ok: true, got: "hello from a\nping\n" });
    assert.deepEqual(await dial(b, fromP), { ok: true, got: "hello from b\nping\n" });
    for (const s of [a, b, p]) assert.equal((await dial(s)).ok, true, `root -> ${s.address}`);
    // Outside the mesh there is no route: a fast failure too.
    const outside = { ...a, address: "198.18.250.1" };
    assert.deepEqual(await dial(outside, fromA), { ok: false, code: "ENETUNREACH" });
    // The host, at the address clusters see it by.
    const host = net.createServer((s) => {
      s.write("hello from host\n");
      s.pipe(s);
    });
    await new Promise<void>((resolve) => host.listen(0, iso.hostAddress, resolve));
    try {
      const hostServer = { ...a, address: iso.hostAddress, port: (host.address() as net.AddressInfo).port };
      assert.deepEqual(await dial(hostServer, fromP), { ok: true, got: "hello from host\nping\n" });
    } finally {
      host.close();
    }
    await stop(servers);
    await iso.destroy();
  } finally {
    await stop(servers);
    await cleanupLeftovers(block.base).finally(() => block.release());
  }
});

test("destroy leaves no namespace, link or route, and kills what was left inside", { skip }, async () => {
  const block = claim(2);
  try {
    const iso = await createIsolation({
      base: block.base,
      clusters: [
        { name: "a", index: 0, private: false },
        { name: "p", index: 1, private: true },
      ],
    });
    const ranges = [iso.layout.podRange, iso.layout.linkRange];
    assert.equal(traces(block.base, ranges).length, 6); // 3 namespaces, the root's link, 2 routes
    const straggler = await startServer(iso, "p");
    const exited = once(straggler.child, "exit");
    await iso.destroy();
    await exited;
    assert.deepEqual(traces(block.base, ranges), []);
    await iso.destroy(); // again: nothing to do
    assert.deepEqual(traces(block.base, ranges), []);
  } finally {
    await cleanupLeftovers(block.base).finally(() => block.release());
  }
});

test("a killed runtime's namespaces are refused, then cleaned up, and the mesh created again", {
  skip,
}, async () => {
  const block = claim(2);
  const clusters = [
    { name: "a", index: 0, private: false },
    { name: "b", index: 1, private: false },
  ];
  const servers: Server[] = [];
  try {
    const killed = await createIsolation({ base: block.base, clusters });
    const orphan = await startServer(killed, "b");
    servers.push(orphan);
    const orphanExited = once(orphan.child, "exit");
    // Its runtime is gone without destroy(); the next one on the block finds what it left.
    await assert.rejects(createIsolation({ base: block.base, clusters }), (e: Error) => {
      assert.match(e.message, new RegExp(`isthmus-${block.base}-a`));
      assert.match(e.message, new RegExp(`cleanupLeftovers\\(${block.base}\\)`));
      return true;
    });
    const removed = await cleanupLeftovers(block.base);
    assert.deepEqual(removed.sort(), [
      `isthmus-${block.base}`,
      `isthmus-${block.base}-a`,
      `isthmus-${block.base}-b`,
    ]);
    await orphanExited;
    assert.deepEqual(await cleanupLeftovers(block.base), []);

    const iso = await createIsolation({ base: block.base, clusters });
    const b = await startServer(iso, "b");
    servers.push(b);
    assert.deepEqual(await dial(b, { iso, cluster: "a" }), { ok: true, got: "hello from b\nping\n" });
    assert.equal((await dial(b)).ok, true);
    await stop(servers);
    await iso.destroy();
  } finally {
    await stop(servers);
    await cleanupLeftovers(block.base).finally(() => block.release());
  }
});

test("a failure half-way through create removes everything made so far", { skip }, async () => {
  const block = claim(2);
  const k = (block.base - 20) / 16;
  const linkRange = `198.19.${k}.0/24`;
  const podRange = `198.18.${k * 16}.0/20`;
  // The last step, the root namespace's route to the mesh's links, meets a route that is not ours.
  execFileSync("ip", ["route", "add", "blackhole", linkRange]);
  try {
    await assert.rejects(
      createIsolation({
        base: block.base,
        clusters: [
          { name: "a", index: 0, private: false },
          { name: "p", index: 1, private: true },
        ],
      }),
      (e: Error) => {
        assert.ok(e.message.includes("ip -batch -: RTNETLINK answers: File exists"), e.message);
        assert.ok(e.message.includes(`(ip route add ${linkRange} via`), e.message);
        return true;
      },
    );
    assert.deepEqual(traces(block.base, [podRange, linkRange]), []);
    // What it did not make, it left alone.
    const blackhole = json<{ dst: string; type?: string }[]>(["route", "show"]).find(
      (r) => r.dst === linkRange,
    );
    assert.equal(blackhole?.type, "blackhole");
  } finally {
    execFileSync("ip", ["route", "del", "blackhole", linkRange]);
    await cleanupLeftovers(block.base).finally(() => block.release());
  }
});

test("two meshes side by side do not interfere, nor reach each other", { skip }, async () => {
  const first = claim(2);
  const second = claim(2);
  const servers: Server[] = [];
  try {
    // The same cluster names in both, as two copies of one demo have.
    const clusters = [
      { name: "a", index: 0, private: false },
      { name: "b", index: 1, private: true },
    ];
    const x = await createIsolation({ base: first.base, clusters });
    const y = await createIsolation({ base: second.base, clusters });
    const xb = await startServer(x, "b");
    const ya = await startServer(y, "a");
    const yb = await startServer(y, "b");
    servers.push(xb, ya, yb);
    assert.notEqual(xb.address, yb.address);
    assert.deepEqual(await dial(ya, { iso: y, cluster: "b" }), { ok: true, got: "hello from a\nping\n" });
    assert.deepEqual(await dial(ya, { iso: x, cluster: "a" }), { ok: false, code: "ENETUNREACH" });
    assert.deepEqual(await dial(xb, { iso: y, cluster: "b" }), { ok: false, code: "ENETUNREACH" });

    await x.destroy();
    assert.deepEqual(await dial(ya, { iso: y, cluster: "b" }), { ok: true, got: "hello from a\nping\n" });
    assert.equal((await dial(yb)).ok, true);
    await stop(servers);
    await y.destroy();
  } finally {
    await stop(servers);
    await cleanupLeftovers(first.base).finally(() => first.release());
    await cleanupLeftovers(second.base).finally(() => second.release());
  }
});
