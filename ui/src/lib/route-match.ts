// Matching a location against the page table (lib/routes.ts): pure, so the
// component tests can check it without loading any page.

import type { Component } from "svelte";
/** Who sees a page: `public` only signed out, `user` signed in, `admin` administrators. */
export type Access = "public" | "user" | "admin";

export interface PageRoute {
  /** Literal segments and `:name` parameters (one segment each), e.g. `/servers/:id`. */
  path: string;
  access: Access;
  // Pages take their parameters as props, so the table cannot name one props type.
  load: () => Promise<{ default: Component<any> }>;
}

export interface Match {
  page: PageRoute;
  params: Record<string, string>;
}

/** The first page whose path matches `path` and its parameters, or null. */
export function matchRoute(path: string, table: PageRoute[]): Match | null {
  const segments = path.split("/");
  for (const page of table) {
    const pattern = page.path.split("/");
    if (pattern.length !== segments.length) continue;
    const params: Record<string, string> = {};
    const matches = pattern.every((part, index) => {
      const segment = segments[index];
      if (!part.startsWith(":")) return part === segment;
      if (!segment) return false;
      try {
        params[part.slice(1)] = decodeURIComponent(segment);
      } catch {
        return false; // a malformed escape names no page
      }
      return true;
    });
    if (matches) return { page, params };
  }
  return null;
}

/** Whether a signed-in user (`isAdmin` or not) may see `page`. */
export function allowed(page: PageRoute, isAdmin: boolean): boolean {
  return page.access === "user" || (page.access === "admin" && isAdmin);
}
