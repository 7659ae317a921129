export { PaymentClient, defaults } from './client.js';
export { PaymentError, type PaymentErrorCode } from './errors.js';
export type * from './types.js';
