/**
 * The node-to-node channel: requests for a shard owned elsewhere travel to the owner over one
 * persistent, multiplexed WebSocket per peer (msgpack frames with correlation ids and deadlines),
 * served on the owner's HTTP port at `/internal/peer`.
 */
export { attachPeerServer } from './server.js';
export { PeerClient } from './client.js';
export {
  channelDefaults,
  exponentialBackoff,
  type PeerClientOptions,
  type PeerClientStats,
  type PeerHandler,
  type PeerServer,
  type PeerServerOptions,
  type PeerServerStats,
  type ReconnectBackoff,
} from './types.js';
