import { defineConfig } from '@playwright/test';

// The server under test: HEARTH_UI_URL (CI starts `hearth serve` and passes it). Without it,
// the in-memory stand-in (e2e/mock-server.mjs, serving dist/) is started.
const port = Number(process.env.MOCK_PORT ?? 8377);
const url = process.env.HEARTH_UI_URL ?? `http://127.0.0.1:${port}`;

export default defineConfig({
  testDir: './e2e',
  timeout: 240_000,
  expect: { timeout: 20_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL: url,
    trace: 'retain-on-failure',
    acceptDownloads: true,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
    },
  },
  webServer: process.env.HEARTH_UI_URL
    ? undefined
    : {
        command: `node e2e/mock-server.mjs ${port}`,
        url: `${url}/api/auth/me`,
        reuseExistingServer: true,
        timeout: 20_000,
      },
});
