import { describe, expect, it } from "vitest";
import { portsText, replicasProblem, sftpCommand, sftpLogin } from "./replicas";

describe("replicas", () => {
  it("shows the SFTP login and ports as the API defines them", () => {
    expect(sftpLogin("alice.b", "3f2a9c1e-0000-4000-8000-000000000000")).toBe("alice.b.3f2a9c1e");
    expect(portsText([{ container_port: 80, host_port: 31000 }, { container_port: 25565, host_port: 31001 }])).toBe(
      "31000 → 80, 31001 → 25565",
    );
    expect(portsText([])).toBe("none");
    expect(sftpCommand("al.3f2a9c1e", "node.example.com:2022")).toBe("sftp -P 2022 al.3f2a9c1e@node.example.com");
    expect(sftpCommand("al.3f2a9c1e", "[::1]:2222")).toBe("sftp -P 2222 al.3f2a9c1e@[::1]");
    expect(sftpCommand("al.3f2a9c1e", null)).toBeNull();
    expect(sftpCommand("al.3f2a9c1e", "no-port")).toBeNull();
  });

  it("checks the replica count", () => {
    expect(replicasProblem("0")).toBe("");
    expect(replicasProblem(" 3 ")).toBe("");
    expect(replicasProblem("-1")).not.toBe("");
    expect(replicasProblem("1.5")).not.toBe("");
    expect(replicasProblem("101")).toBe("at most 100");
  });
});
