import { describe, expect, it } from "vitest";
import { finished, parseUrlInputs, taskFormData, type TaskForm } from "./tasks";

const empty: TaskForm = { name: "", image: "", command: "", env: "", urls: "", cpu: "", memory: "" };

describe("task form", () => {
  it("reads URL inputs with optional paths", () => {
    expect(parseUrlInputs("https://example.com/a.txt\n\nhttp://x.test/b data/b.bin\n")).toEqual({
      files: [{ url: "https://example.com/a.txt" }, { url: "http://x.test/b", path: "data/b.bin" }],
      problems: [],
    });
    expect(parseUrlInputs("ftp://x/y\nhttps://x/y a b").problems).toEqual([
      "line 1: not an http(s) URL",
      'line 2: expected "URL" or "URL path"',
    ]);
  });

  it("builds the multipart body with the spec and the chosen files", async () => {
    const file = new File(["hello"], "in.txt", { type: "text/plain" });
    const { body, problems } = taskFormData(
      { ...empty, name: "t", image: "busybox", command: "cat in.txt", env: "A=1", urls: "https://x.test/f", cpu: "500m" },
      [file],
    );
    expect(problems).toEqual({});
    const spec = JSON.parse(String(body?.get("task")));
    expect(spec).toEqual({
      image: "busybox", name: "t", command: "cat in.txt", env: { A: "1" },
      files: [{ url: "https://x.test/f" }], resources: { cpu: "500m" },
    });
    const part = body?.get("file") as File;
    expect(part.name).toBe("in.txt");
    expect(await part.text()).toBe("hello");
  });

  it("names the fields with problems and sends nothing", () => {
    const { body, problems } = taskFormData({ ...empty, env: "nope", urls: "x" }, []);
    expect(body).toBeNull();
    expect(Object.keys(problems).sort()).toEqual(["env", "files", "image"]);
    expect(finished("Failed")).toBe(true);
    expect(finished("Pending")).toBe(false);
  });
});
