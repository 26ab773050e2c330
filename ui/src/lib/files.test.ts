import { describe, expect, it } from "vitest";
import { joinPath, parentPath } from "./files";

describe("paths", () => {
  it("joins and climbs without doubling slashes", () => {
    expect(joinPath("/", "a.txt")).toBe("/a.txt");
    expect(joinPath("/data/", "b")).toBe("/data/b");
    expect(parentPath("/data/b")).toBe("/data");
    expect(parentPath("/a.txt")).toBe("/");
    expect(parentPath("/")).toBe("/");
  });
});
