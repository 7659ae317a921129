// The simulated payment provider as its own program: `node --import tsx src/payment-provider/main.ts`.
import { seededRandom } from './random.js';
import { createPaymentProvider } from './server.js';
import { ProviderSettingsError, readProviderSettings, type ProviderSettings } from './settings.js';

function settingsOrExit(): ProviderSettings {
  try {
    return readProviderSettings(process.env);
  } catch (error) {
    if (!(error instanceof ProviderSettingsError)) throw error;
    console.error(`payment-provider: ${error.message}`);
    process.exit(2);
  }
}

const settings = settingsOrExit();
const provider = createPaymentProvider({
  latencyMs: settings.latencyMs,
  declineRate: settings.declineRate,
  errorRate: settings.errorRate,
  timeoutRate: settings.timeoutRate,
  timeoutHoldMs: settings.timeoutHoldMs,
  random: settings.seed === undefined ? Math.random : seededRandom(settings.seed),
});

try {
  const port = await provider.listen(settings.port, settings.host);
  console.log(
    `payment-provider: listening on http://${settings.host}:${port} pid=${process.pid} ` +
      `latencyMs=${settings.latencyMs} declineRate=${settings.declineRate} errorRate=${settings.errorRate} ` +
      `timeoutRate=${settings.timeoutRate} timeoutHoldMs=${settings.timeoutHoldMs} seed=${settings.seed ?? '-'}`,
  );
} catch (error) {
  console.error(`payment-provider: cannot listen on ${settings.host}:${settings.port}: ${String(error)}`);
  process.exit(1);
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void provider.close().then(() => process.exit(0));
  });
}
