// Matching a path against the route table (`src/routes.ts`), without any DOM.

/** One entry of the route table (`src/routes.ts`): `pattern` is a path whose
 * segments starting with `:` are parameters (`/servers/:id`); a last one ending in
 * `?` may be absent (`/servers/:id/:tab?`). */
export interface RouteEntry {
  pattern: string;
  /** who may open it: everyone (sign-in pages), any signed-in account, administrators */
  access: "public" | "user" | "admin";
}

/** The first entry of `table` matching `path`, with its decoded parameters; null
 * when none does. A parameter never spans a `/`, and an empty one never matches. */
export function matchRoute<T extends RouteEntry>(
  table: readonly T[],
  path: string,
): { route: T; params: Record<string, string> } | null {
  const parts = path.replace(/\/+$/, "").split("/");
  for (const route of table) {
    let wanted = route.pattern.split("/");
    const optional = wanted[wanted.length - 1]?.endsWith("?") ?? false;
    if (optional && parts.length === wanted.length - 1) wanted = wanted.slice(0, -1);
    if (wanted.length !== parts.length) continue;
    const params: Record<string, string> = {};
    const fits = wanted.every((segment, i) => {
      const part = parts[i] ?? "";
      if (!segment.startsWith(":")) return segment === part;
      if (!part) return false;
      try {
        params[segment.slice(1).replace(/\?$/, "")] = decodeURIComponent(part);
      } catch {
        return false;
      }
      return true;
    });
    if (fits) return { route, params };
  }
  return null;
}
