export { matchRoute, type RouteEntry } from "./routing";

// A tiny history-API router: the control plane answers every non-API path with
// index.html (controlplane/api/ui_assets.py), so deep links and reloads work.

class Route {
  path = $state(location.pathname);
}

export const route = new Route();

export function navigate(path: string, replace = false): void {
  if (path === route.path) return;
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  route.path = location.pathname; // without a query or fragment
}

addEventListener("popstate", () => {
  route.path = location.pathname;
});
