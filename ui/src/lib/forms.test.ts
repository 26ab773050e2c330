import { describe, expect, it } from "vitest";
import {
  formatEnv,
  formatQuota,
  parseEnv,
  parseQuota,
  passwordProblem,
  quantityProblem,
  quotaInput,
  sshKeyProblem,
  usernameProblem,
} from "./forms";

describe("environment text", () => {
  it("reads KEY=value lines, keeping = and spaces in values", () => {
    const { env, problems } = parseEnv("# comment\nA=1\n\nB = x=y \r\nEMPTY=\n");
    expect(problems).toEqual([]);
    expect(env).toEqual({ A: "1", B: " x=y ", EMPTY: "" });
    expect(formatEnv({ B: "2", A: "1" })).toBe("A=1\nB=2");
  });

  it("names each bad line", () => {
    const { problems } = parseEnv("A=1\nnope\n=x\nA=2");
    expect(problems).toEqual([
      "line 2: expected KEY=value",
      "line 3: the name is empty",
      "line 4: A is set twice",
    ]);
  });
});

describe("rules", () => {
  it("reads quantities as common/quantities.py does", () => {
    expect(quantityProblem("cpu", "500m")).toBe("");
    expect(quantityProblem("cpu", " 1.5 ")).toBe("");
    expect(quantityProblem("cpu", "1e3")).not.toBe("");
    expect(quantityProblem("cpu", "2Gi")).not.toBe("");
    expect(quantityProblem("bytes", "512Mi")).toBe("");
    expect(quantityProblem("bytes", "1048576")).toBe("");
    expect(quantityProblem("bytes", "-1Mi")).not.toBe("");
    expect(quantityProblem("bytes", "12 parsecs")).not.toBe("");
  });

  it("checks passwords, usernames and SSH keys", () => {
    expect(passwordProblem("short")).toBe("at least 8 characters");
    expect(passwordProblem("with space 123")).toBe("no spaces or other whitespace");
    expect(passwordProblem("long-enough", "long-enoug")).toBe("the two passwords differ");
    expect(passwordProblem("long-enough", "long-enough")).toBe("");
    expect(usernameProblem("al")).not.toBe("");
    expect(usernameProblem("a.b-c_d")).toBe("");
    expect(usernameProblem("a@b")).not.toBe("");
    expect(sshKeyProblem("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI me@host")).toBe("");
    expect(sshKeyProblem("hello")).not.toBe("");
    expect(sshKeyProblem("ssh-rsa AAA%%")).not.toBe("");
  });
});

describe("quotas", () => {
  it("turns the form's cores, MiB and counts into the API's limits", () => {
    const { limits, problems } = parseQuota({
      deployments: "5", replicas: "", cpu_millis: "1.5", memory_bytes: "512", disk_bytes: " ",
    });
    expect(problems).toEqual({});
    expect(limits).toEqual({
      deployments: 5, replicas: null, cpu_millis: 1500, memory_bytes: 512 * 2 ** 20, disk_bytes: null,
    });
    expect(quotaInput("cpu_millis", 1500)).toBe("1.5");
    expect(quotaInput("memory_bytes", 512 * 2 ** 20)).toBe("512");
    expect(quotaInput("replicas", null)).toBe("");
  });

  it("refuses what is not a number, and formats for people", () => {
    const { problems } = parseQuota({
      deployments: "2.5", replicas: "-1", cpu_millis: "x", memory_bytes: "1", disk_bytes: "",
    });
    expect(Object.keys(problems).sort()).toEqual(["cpu_millis", "deployments", "replicas"]);
    expect(formatQuota("cpu_millis", 1300)).toBe("1.3 CPU");
    expect(formatQuota("memory_bytes", 939524096)).toBe("896 MiB");
    expect(formatQuota("disk_bytes", 8 * 2 ** 30)).toBe("8 GiB");
    expect(formatQuota("deployments", null)).toBe("unlimited");
  });
});
