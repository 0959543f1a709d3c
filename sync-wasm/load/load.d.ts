/**
 * Loads the WebAssembly module, once per page (later calls get the same promise). Await it
 * before `new ChatSync(...)` or `ChatSync.clearOfflineQueue(...)`; the React hook calls it
 * itself. It finds the `.wasm` file with no bundler configuration (Vite, webpack, Next.js).
 */
export function loadChatSync(): Promise<void>;
