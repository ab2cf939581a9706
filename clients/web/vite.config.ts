/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The hub serves dist/ at "/" and grpc-web on the same origin. For `npm run dev`, point
// BACKWATCH_HUB at a running hub (default http://127.0.0.1:50051) and Vite proxies the
// grpc-web calls to it, so the browser still talks to one origin.
const hub = process.env.BACKWATCH_HUB ?? "http://127.0.0.1:50051";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1200,
  },
  server: {
    proxy: {
      "/backwatch.v1.TelemetryService": { target: hub, changeOrigin: true },
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    restoreMocks: true,
  },
});
