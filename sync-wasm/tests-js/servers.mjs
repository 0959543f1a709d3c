// Starts the real chatsync server and a page server in front of it. The page server
// serves the built package and the test page, and proxies /api to the backend so tests
// can log every request and make the network fail on purpose.
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const pkgDir = path.join(here, "..", "pkg");
const pageDir = path.join(here, "page");

export async function startBackend() {
  const bin = process.env.CHATSYNC_BIN;
  if (!bin) throw new Error("CHATSYNC_BIN must name the chatsync binary");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sync-wasm-test-"));
  const child = spawn(
    bin,
    [
      "--addr", "127.0.0.1:0",
      "--database-url", `sqlite://${dir}/db.sqlite`,
      "--cors-allow-origin", "*",
      "--scripted-chunk-delay-ms", "5",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`chatsync did not start:\n${stderr}`)), 30000);
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/chatsync listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`chatsync exited with ${code}:\n${stderr}`));
    });
  });
  return {
    url,
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const types = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };

/**
 * `failure` may be "network" (the connection drops before the backend sees the request)
 * or "lose-answer" (the backend handles the request, the answer is lost on the way back),
 * or "auth" (requests without `Authorization: Bearer fresh` get the server's 401).
 */
export async function startPageServer(backendUrl, { reactDir = null } = {}) {
  const backend = new URL(backendUrl);
  const state = { failure: null, log: [] };
  const server = http.createServer((req, res) => {
    if (req.url.startsWith("/api/")) return proxy(req, res);
    // `reactDir`: the bundled React test app, served under /react/.
    const file = req.url.startsWith("/pkg/")
      ? path.join(pkgDir, req.url.slice("/pkg/".length))
      : reactDir && req.url.startsWith("/react/")
        ? path.join(reactDir, req.url === "/react/" ? "index.html" : req.url.slice("/react/".length))
        : path.join(pageDir, req.url === "/" ? "index.html" : req.url.slice(1));
    fs.readFile(file, (err, body) => {
      if (err) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "Content-Type": types[path.extname(file)] ?? "application/octet-stream" });
      res.end(body);
    });
  });

  function proxy(req, res) {
    const entry = {
      method: req.method,
      path: req.url,
      ifNoneMatch: req.headers["if-none-match"] ?? null,
      tag: req.headers["x-test-tag"] ?? null,
      authorization: req.headers.authorization ?? null,
      start: performance.now(),
      end: null,
      status: null,
    };
    state.log.push(entry);
    const failure = state.failure;
    if (failure === "network") {
      req.socket.destroy();
      return;
    }
    if (failure === "auth" && entry.authorization !== "Bearer fresh") {
      entry.status = 401;
      entry.end = performance.now();
      res.writeHead(401, { "Content-Type": "application/json", "WWW-Authenticate": "Bearer" });
      res.end(JSON.stringify({ error: { code: "unauthenticated", message: "a valid token is needed" } }));
      return;
    }
    const upstream = http.request(
      { host: backend.hostname, port: backend.port, path: req.url, method: req.method, headers: req.headers },
      (answer) => {
        entry.status = answer.statusCode;
        if (failure === "lose-answer") {
          answer.resume();
          answer.on("end", () => req.socket.destroy());
          return;
        }
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
        answer.on("end", () => (entry.end = performance.now()));
      },
    );
    upstream.on("error", () => req.socket.destroy());
    req.pipe(upstream);
  }

  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    setFailure(mode) {
      state.failure = mode;
    },
    /** Logged /state polls of one context. */
    polls(contextId) {
      return state.log.filter((e) => e.path.startsWith(`/api/contexts/${contextId}/state`));
    },
    stop() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
