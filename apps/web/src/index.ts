import { fileURLToPath } from 'node:url';

/**
 * Where `npm run web:build` writes the page (index.html plus content-hashed assets) and where the
 * node serves it from. Kept free of build-time imports so the server can import it at run time.
 */
export const webDistDir = fileURLToPath(new URL('../dist/', import.meta.url));
