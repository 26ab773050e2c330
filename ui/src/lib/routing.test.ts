import { describe, expect, it } from "vitest";
import { matchRoute, type RouteEntry } from "./routing";

const table: RouteEntry[] = [
  { pattern: "/servers/new", access: "user" },
  { pattern: "/servers/:id/:tab?", access: "user" },
  { pattern: "/login", access: "public" },
];

describe("matchRoute", () => {
  it("prefers earlier entries and decodes parameters", () => {
    expect(matchRoute(table, "/servers/new")?.route.pattern).toBe("/servers/new");
    expect(matchRoute(table, "/servers/a%20b")?.params).toEqual({ id: "a b" });
    expect(matchRoute(table, "/servers/a%20b")?.route.pattern).toBe("/servers/:id/:tab?");
    expect(matchRoute(table, "/servers/x/files")?.params).toEqual({ id: "x", tab: "files" });
    expect(matchRoute(table, "/login/")?.route.pattern).toBe("/login");
  });

  it("answers null for unknown paths, empty or malformed parameters", () => {
    expect(matchRoute(table, "/nope")).toBeNull();
    expect(matchRoute(table, "/servers/x/files/more")).toBeNull();
    expect(matchRoute(table, "/servers//files")).toBeNull();
    expect(matchRoute(table, "/servers/%E0%A4%A")).toBeNull();
  });
});
