// A replica's files through the control plane (docs/protocols/files.md): listing goes
// through the API, uploads and downloads straight to the agent with signed URLs.

export interface FileEntry {
  name: string;
  type: "file" | "directory" | "symlink" | "other";
  size: number;
  mode: string;
  mtime: number | string;
}

/** `name` inside `dir` ("/" joins without doubling). */
export function joinPath(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, "")}/${name}`;
}

/** The parent of `path` ("/" for top-level entries and "/" itself). */
export function parentPath(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  const cut = trimmed.lastIndexOf("/");
  return cut <= 0 ? "/" : trimmed.slice(0, cut);
}

/** PUT `file` to a signed upload URL, reporting the fraction sent (0 to 1). */
export function uploadWithProgress(
  url: string,
  file: Blob,
  progress: (fraction: number) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("PUT", url);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) progress(event.loaded / event.total);
    };
    request.onload = () => {
      if (request.status >= 200 && request.status < 300) {
        progress(1);
        resolve();
      } else reject(new Error(uploadError(request.responseText, request.status)));
    };
    request.onerror = () => reject(new Error("the upload could not reach the node"));
    request.send(file);
  });
}

function uploadError(text: string, status: number): string {
  try {
    const body = JSON.parse(text) as { error?: { message?: string } };
    return body.error?.message ?? `upload failed (HTTP ${status})`;
  } catch {
    return `upload failed (HTTP ${status})`;
  }
}

/** The largest file the plain editor opens (bigger ones are downloaded instead). */
export const EDIT_LIMIT_BYTES = 1024 * 1024;

/** `bytes` as text for the editor, or null when they are not UTF-8 text (a NUL byte,
 * or invalid UTF-8): saving such a file back as text would corrupt it. */
export function textOf(bytes: Uint8Array): string | null {
  if (bytes.includes(0)) return null;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

const ARCHIVE = /\.(tar\.gz|tgz|tar\.bz2|tar\.xz|tar|zip)$/i;

/** Whether `name` is an archive the agent's decompress reads (tar, any compression, or zip). */
export function isArchive(name: string): boolean {
  return ARCHIVE.test(name);
}

/** A default archive path in `dir` for compressing `names`: `<name>.<format>` for one
 * entry, `archive.<format>` for several. */
export function archivePath(dir: string, names: string[], format: "tar.gz" | "zip"): string {
  const base = names.length === 1 ? (names[0] ?? "archive") : "archive";
  return joinPath(dir, `${base}.${format}`);
}

/** The problem with a new name for an entry (no slashes, not `.`/`..`, not empty), or "". */
export function nameProblem(name: string): string {
  if (!name.trim()) return "a name is required";
  if (name.includes("/")) return "a name cannot contain /";
  if (name === "." || name === "..") return "not a usable name";
  return "";
}
