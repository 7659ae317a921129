export { PaymentClient, defaults } from './client.js';
export { PaymentError, type PaymentErrorCode } from './errors.js';
export type {
  BreakerState,
  ChargeRequest,
  PaymentClientOptions,
  PaymentResult,
  PaymentStatus,
} from './types.js';
