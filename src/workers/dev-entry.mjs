// Worker entry when running from the TypeScript sources (tests, `node --import tsx`):
// Node 20 does not apply the parent's tsx loader inside worker threads, so the
// worker registers it itself before loading the real entry. Built code (dist/)
// uses worker.js directly.
import { register } from 'tsx/esm/api';

register();
const entry = await import('./worker.ts');
export default entry.default;
