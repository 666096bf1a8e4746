// Builds the dashboard into api/static, which the API serves at "/". Relative asset paths ("./") keep the
// build working wherever the API mounts it; nothing is fetched from the network at run time.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  build: {
    outDir: "../api/static",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1200,
  },
});
