import { describe, expect, it } from "vitest";
import { allowed, matchRoute, type PageRoute } from "./route-match";

const none = async () => ({ default: (() => {}) as never });
const table: PageRoute[] = [
  { path: "/servers/new", access: "user", load: none },
  { path: "/servers/:id", access: "user", load: none },
  { path: "/admin/nodes", access: "admin", load: none },
];

describe("matchRoute", () => {
  it("takes the first matching entry: literals before parameters", () => {
    expect(matchRoute("/servers/new", table)?.page.path).toBe("/servers/new");
    expect(matchRoute("/servers/a%20b", table)?.params).toEqual({ id: "a b" });
  });

  it("matches whole paths only", () => {
    expect(matchRoute("/servers/", table)).toBeNull();
    expect(matchRoute("/servers/x/y", table)).toBeNull();
    expect(matchRoute("/servers/%E0", table)).toBeNull();
  });

  it("keeps admin pages for administrators", () => {
    const nodes = matchRoute("/admin/nodes", table)!.page;
    expect([allowed(nodes, false), allowed(nodes, true)]).toEqual([false, true]);
  });
});
