// Loads the package's WebAssembly module once per page. Shipped beside sync_wasm.js and
// sync_wasm_bg.wasm, so `new URL("./sync_wasm_bg.wasm", import.meta.url)` names the module
// for every bundler that follows such URLs (Vite, webpack, Turbopack, Rspack, esbuild's
// file loader setups) and for plain ES modules in the browser.
import init from "./sync_wasm.js";

/** Where the module is: beside this file, as bundlers see it. */
function wasmUrl() {
  const url = new URL("./sync_wasm_bg.wasm", import.meta.url);
  // Vite 6 and 7 copy a dependency's JavaScript into node_modules/.vite/deps in development,
  // but not the files it loads through `new URL`; there the module is asked for where the
  // package is installed, which Vite's development server serves as it is.
  const deps = url.pathname.lastIndexOf("/node_modules/.vite/deps/");
  if (deps >= 0) {
    url.pathname = `${url.pathname.slice(0, deps)}/node_modules/@chatsync/sync-wasm/sync_wasm_bg.wasm`;
    url.search = "";
  }
  return url;
}

let loading = null;

/**
 * Loads the module; later calls get the same promise, and after a failure the next call
 * tries again.
 */
export function loadChatSync() {
  loading ??= init({ module_or_path: wasmUrl() }).then(
    () => undefined,
    (error) => {
      loading = null;
      throw error;
    },
  );
  return loading;
}
