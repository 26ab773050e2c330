import { describe, expect, it } from "vitest";
import { checkAll, checkValue } from "./variables";

describe("checkValue (same meaning as controlplane/templates/rules.py)", () => {
  it("accepts an empty value unless required", () => {
    expect(checkValue({}, "")).toBeNull();
    expect(checkValue({ required: true }, "")).toBe("is required");
  });

  it("bounds a string's length and an integer's value", () => {
    expect(checkValue({ min: 2, max: 3 }, "a")).toBe("must be at least 2 characters long");
    expect(checkValue({ min: 2, max: 3 }, "abcd")).toBe("must be at most 3 characters long");
    expect(checkValue({ kind: "integer", min: 1, max: 64 }, "65")).toBe("must be at most 64");
    expect(checkValue({ kind: "integer", min: 1 }, "0")).toBe("must be at least 1");
    expect(checkValue({ kind: "integer" }, "1.5")).toBe("must be a whole number");
    expect(checkValue({ kind: "integer" }, "-3")).toBeNull();
  });

  it("reads booleans, one_of and regex (matching anywhere)", () => {
    expect(checkValue({ kind: "boolean" }, "YES")).toBeNull();
    expect(checkValue({ kind: "boolean" }, "maybe")).toBe("must be true or false");
    expect(checkValue({ one_of: ["a", "b"] }, "c")).toBe("must be one of a, b");
    expect(checkValue({ regex: "b" }, "abc")).toBeNull();
    expect(checkValue({ regex: "^b" }, "abc")).toBe("must match ^b");
  });
});

describe("checkAll", () => {
  it("checks only what the owner may edit, keyed by variable", () => {
    const variables = [
      { env: "A", rules: { required: true } },
      { env: "B", user_editable: false, rules: { required: true } },
      { env: "C", rules: { kind: "integer" as const } },
    ];
    expect(checkAll(variables, { C: "x" })).toEqual({
      A: "is required",
      C: "must be a whole number",
    });
  });
});
