import { apiRoute, type ApiRoute } from '../api/contract.js';
import { openApiDocument } from '../api/openapi.js';
import { openApiContract } from '../api/routes.js';
import type { Route } from './server.js';

const isApiRoute = (route: Route): route is ApiRoute => 'contract' in route;

/** `routes` and `GET /openapi.json`, their document. */
export const withOpenApi = (routes: Route[]): Route[] => [...routes, openApiRoute(routes)];

/**
 * `GET /openapi.json` (anonymous): the document of `routes` (those made from a contract) and of itself,
 * written once here; each request gets the same text.
 */
export function openApiRoute(routes: readonly Route[]): ApiRoute {
  const contracts = [...routes.filter(isApiRoute).map((route) => route.contract), openApiContract];
  const body = JSON.stringify(openApiDocument(contracts));
  return apiRoute(openApiContract, () => ({
    status: 200,
    text: { body, contentType: 'application/json' },
  }));
}
