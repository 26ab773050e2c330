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
