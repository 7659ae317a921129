import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** SQL and Lua files stay in src/storage; code compiled to dist/src/storage reads them from there. */
export function storageAsset(relativePath: string): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  return join(here.replace(/[\\/]dist[\\/]src[\\/]storage[\\/]?$/, '/src/storage/'), relativePath);
}
