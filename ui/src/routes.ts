// The UI's one route table: every page, its path, who may open it and, for pages in
// the navigation, their label. App.svelte renders the first entry matching the
// address; a walker (screenshots, accessibility scans) can enumerate it.

import type { Component } from "svelte";
import type { RouteEntry } from "./lib/routing";
// The sign-in pages are in the entry chunk: the first load needs no second request.
import * as login from "./pages/Login.svelte";
import * as register from "./pages/Register.svelte";

// A page takes the path's parameters (`:id`, `:tab`) as props; pages without
// parameters take none, so the table holds components of any props.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyPage = Component<any>;

export interface PageRoute extends RouteEntry {
  /** the page's component, loaded on demand (pages past sign-in are their own chunks) */
  load: () => Promise<{ default: AnyPage }>;
  /** the label in the main navigation; pages without one are reached from others */
  nav?: string;
}

export const ROUTES: readonly PageRoute[] = [
  { pattern: "/login", access: "public", load: async () => login },
  { pattern: "/register", access: "public", load: async () => register },
  { pattern: "/forgot-password", access: "public", load: () => import("./pages/ForgotPassword.svelte") },
  { pattern: "/reset-password", access: "public", load: () => import("./pages/ResetPassword.svelte") },
  { pattern: "/servers", access: "user", nav: "Servers", load: () => import("./pages/Servers.svelte") },
  { pattern: "/servers/new", access: "user", load: () => import("./pages/CreateServer.svelte") },
  { pattern: "/servers/:id/:tab?", access: "user", load: () => import("./pages/Server.svelte") },
  { pattern: "/tasks", access: "user", nav: "Tasks", load: () => import("./pages/Tasks.svelte") },
  { pattern: "/tasks/:id", access: "user", load: () => import("./pages/Task.svelte") },
  { pattern: "/webhooks", access: "user", nav: "Webhooks", load: () => import("./pages/Webhooks.svelte") },
  { pattern: "/account", access: "user", nav: "Account", load: () => import("./pages/Account.svelte") },
  { pattern: "/admin/nodes", access: "admin", nav: "Nodes", load: () => import("./pages/Nodes.svelte") },
  { pattern: "/admin/users", access: "admin", nav: "Users", load: () => import("./pages/AdminUsers.svelte") },
  { pattern: "/admin/templates", access: "admin", nav: "Templates", load: () => import("./pages/AdminTemplates.svelte") },
];

/** Where a signed-in account lands (and where unknown paths go). */
export const HOME = "/servers";
