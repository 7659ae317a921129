// `npm run -s openapi`: writes docs/openapi.json, the OpenAPI 3.1 document of the HTTP API, from the routes'
// contracts (src/api/routes.ts) with the default settings. test/api/openapi.test.ts fails while the
// committed file differs from what the code generates.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { format, resolveConfig } from 'prettier';
import { publishedDocument } from '../src/api/openapi.js';
import { loadConfig } from '../src/config.js';
import { REPO_ROOT } from './stack/layout.js';

export const DOCUMENT_PATH = join(REPO_ROOT, 'docs/openapi.json');

const document = publishedDocument(loadConfig({}).purchase);
const options = await resolveConfig(DOCUMENT_PATH);
const text = await format(JSON.stringify(document), { ...options, parser: 'json', filepath: DOCUMENT_PATH });
writeFileSync(DOCUMENT_PATH, text);
process.stdout.write(`wrote ${DOCUMENT_PATH}\n`);
