/// <reference types="vitest/config" />
// The dashboard's build and dev server. `npm run dev` proxies the API like the production
// servers do (utils/frontend_server.py under `make run`, nginx in compose), so the app always
// talks to its own origin and needs no CORS.
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

const api = process.env.ATF_API_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: {
    port: 3000,
    host: "127.0.0.1",
    proxy: { "/api": api, "/health": api },
  },
  preview: {
    port: 3000,
    host: "127.0.0.1",
    proxy: { "/api": api, "/health": api },
  },
  build: { outDir: "dist", sourcemap: false, chunkSizeWarningLimit: 400 },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test-setup.ts"],
    // Generous: on a loaded 2-core machine one test's first render under jsdom took over the
    // default 5 s; a test fails on what it checks, not on how busy the machine is.
    testTimeout: 30_000,
  },
});
