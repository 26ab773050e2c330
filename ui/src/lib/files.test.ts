import { describe, expect, it } from "vitest";
import { archivePath, isArchive, joinPath, nameProblem, parentPath, textOf } from "./files";

describe("paths", () => {
  it("joins and climbs without doubling slashes", () => {
    expect(joinPath("/", "a.txt")).toBe("/a.txt");
    expect(joinPath("/data/", "b")).toBe("/data/b");
    expect(parentPath("/data/b")).toBe("/data");
    expect(parentPath("/a.txt")).toBe("/");
    expect(parentPath("/")).toBe("/");
  });

  it("names archives and checks new names", () => {
    expect(archivePath("/", ["world"], "tar.gz")).toBe("/world.tar.gz");
    expect(archivePath("/data", ["a", "b"], "zip")).toBe("/data/archive.zip");
    expect(isArchive("x.TAR.GZ")).toBe(true);
    expect(isArchive("x.tgz")).toBe(true);
    expect(isArchive("x.zip")).toBe(true);
    expect(isArchive("x.gz.txt")).toBe(false);
    expect(nameProblem("ok.txt")).toBe("");
    expect(nameProblem(" ")).not.toBe("");
    expect(nameProblem("a/b")).not.toBe("");
    expect(nameProblem("..")).not.toBe("");
  });
});

describe("textOf", () => {
  it("opens UTF-8 text and refuses binary", () => {
    expect(textOf(new TextEncoder().encode("motd=héllo\n"))).toBe("motd=héllo\n");
    expect(textOf(new Uint8Array([0x61, 0x00, 0x62]))).toBeNull();
    expect(textOf(new Uint8Array([0xff, 0xfe, 0x41]))).toBeNull();
    expect(textOf(new Uint8Array())).toBe("");
  });
});
