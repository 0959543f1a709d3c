import { defineConfig } from "vite";

// No React plugin: the built-in transform compiles TSX with the automatic JSX runtime, and
// the app needs neither Fast Refresh nor Babel.
export default defineConfig({
  // The sync package is linked from ../sync-wasm/pkg; its React binding must use the app's
  // one copy of React, not look for its own beside the package.
  resolve: { dedupe: ["react", "react-dom"] },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
  },
  server: {
    // `npm run dev` talks to a backend started separately on the default address.
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
});
