// Tasks (docs/api.md "Tasks", "Task queue"): the create form as the multipart body of
// POST /v1/tasks, and the shapes the pages read.

import { parseEnv } from "./forms";

export type TaskStatus = "Pending" | "Running" | "Succeeded" | "Failed";

export interface TaskView {
  id: string;
  name: string;
  image: string;
  command: string[];
  status: TaskStatus;
  exit_code: number | null;
  oom_killed: boolean;
  error_message: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  queue_position: number | null;
  queue_reason: string | null;
  files: { id: string; path: string; size: number; source_url: string | null }[];
}

export interface TaskForm {
  name: string;
  image: string;
  command: string;
  env: string;
  urls: string;
  cpu: string;
  memory: string;
}

/** URL input lines: `URL` (placed under the URL's last segment) or `URL path`. */
export function parseUrlInputs(text: string): { files: { url: string; path?: string }[]; problems: string[] } {
  const files: { url: string; path?: string }[] = [];
  const problems: string[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (!line) return;
    const [url = "", path, extra] = line.split(/\s+/);
    if (!/^https?:\/\/\S+$/i.test(url)) problems.push(`line ${index + 1}: not an http(s) URL`);
    else if (extra !== undefined) problems.push(`line ${index + 1}: expected "URL" or "URL path"`);
    else files.push(path ? { url, path } : { url });
  });
  return { files, problems };
}

/** The multipart body of POST /v1/tasks: the spec as the `task` part, each chosen
 * file as a part named by its path; or the problems by field. */
export function taskFormData(
  form: TaskForm,
  uploads: File[],
): { body: FormData | null; problems: Record<string, string> } {
  const problems: Record<string, string> = {};
  if (!form.image.trim()) problems.image = "an image is required";
  const env = parseEnv(form.env);
  if (env.problems.length) problems.env = env.problems.join("; ");
  const inputs = parseUrlInputs(form.urls);
  if (inputs.problems.length) problems.files = inputs.problems.join("; ");
  if (Object.keys(problems).length) return { body: null, problems };
  const spec: Record<string, unknown> = { image: form.image.trim(), env: env.env, files: inputs.files };
  if (form.name.trim()) spec.name = form.name.trim();
  if (form.command.trim()) spec.command = form.command;
  const resources: Record<string, string> = {};
  if (form.cpu.trim()) resources.cpu = form.cpu.trim();
  if (form.memory.trim()) resources.memory = form.memory.trim();
  if (Object.keys(resources).length) spec.resources = resources;
  const body = new FormData();
  body.append("task", JSON.stringify(spec));
  for (const file of uploads) body.append("file", file, file.name);
  return { body, problems };
}

/** Whether a task has ended (its logs and exit code are final). */
export function finished(status: TaskStatus): boolean {
  return status === "Succeeded" || status === "Failed";
}
