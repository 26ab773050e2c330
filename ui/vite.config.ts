import { defineConfig } from "vitest/config";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import tailwindcss from "@tailwindcss/vite";

// Built into the control plane's package (controlplane/ui_dist), served at `/`
// (controlplane/api/ui_assets.py). Hashed files live under /assets/.
export default defineConfig({
  plugins: [tailwindcss(), svelte()],
  build: {
    outDir: "../controlplane/ui_dist",
    emptyOutDir: true,
    manifest: true,
    target: "es2022",
  },
  server: {
    proxy: { "/v1": { target: "http://127.0.0.1:8080", ws: true } },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
