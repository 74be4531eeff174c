import { defineConfig } from 'vitest/config';

// Tauri v2 serves the UI from the dev server on a fixed port (strictPort: a taken port is an
// error, never a silent other one) and loads ui/dist in release builds.
export default defineConfig({
  root: '.',
  clearScreen: false,
  server: {
    port: 1420,
    strictPort: true,
  },
  envPrefix: ['VITE_', 'TAURI_ENV_'],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2021',
    sourcemap: false,
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
