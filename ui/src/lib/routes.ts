// Every page of the UI, in one table: App.svelte renders the first entry whose path
// matches the location (lib/route-match.ts). tests/e2e/test_web_ui_pages.py reads this
// file to walk every page (screenshots, accessibility scan), so each entry stays on
// one line with its `path` and `access` as plain string literals.
import type { PageRoute } from "./route-match";
import Login from "../pages/Login.svelte";
import Register from "../pages/Register.svelte";

// Pages past sign-in load on demand: the login page's first load stays small.
// Literal paths come before parameters that would also match them (`/servers/new`).
export const pages: PageRoute[] = [
  { path: "/login", access: "public", load: async () => ({ default: Login }) },
  { path: "/register", access: "public", load: async () => ({ default: Register }) },
  { path: "/servers", access: "user", load: () => import("../pages/Servers.svelte") },
  { path: "/servers/new", access: "user", load: () => import("../pages/CreateServer.svelte") },
  { path: "/servers/:id", access: "user", load: () => import("../pages/Server.svelte") },
  { path: "/account", access: "user", load: () => import("../pages/Account.svelte") },
  { path: "/admin/nodes", access: "admin", load: () => import("../pages/Nodes.svelte") },
];

