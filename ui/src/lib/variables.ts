// Template variable rules, checked in the browser with the same meaning as the API
// (controlplane/templates/rules.py `check_value`, docs/templates.md "Variables and rules").

export interface VariableRules {
  kind?: "string" | "integer" | "boolean";
  required?: boolean;
  min?: number | null;
  max?: number | null;
  one_of?: string[] | null;
  regex?: string | null;
}

export interface TemplateVariable {
  env: string;
  name?: string;
  description?: string;
  default?: string;
  user_viewable?: boolean;
  user_editable?: boolean;
  rules?: VariableRules;
}

const TRUE_WORDS = ["1", "true", "yes", "on"];
const FALSE_WORDS = ["0", "false", "no", "off"];
const INTEGER = /^-?[0-9]+$/;

/** Why `value` breaks `rules`, or null when it satisfies them. */
export function checkValue(rules: VariableRules, value: string): string | null {
  if (value === "") return rules.required ? "is required" : null;
  if (rules.one_of != null && !rules.one_of.includes(value)) {
    return "must be one of " + rules.one_of.join(", ");
  }
  const problem = kindProblem(rules, value);
  if (problem !== null) return problem;
  if (rules.regex != null && !new RegExp(rules.regex).test(value)) {
    return `must match ${rules.regex}`;
  }
  return null;
}

function kindProblem(rules: VariableRules, value: string): string | null {
  const kind = rules.kind ?? "string";
  if (kind === "boolean") {
    const word = value.toLowerCase();
    return TRUE_WORDS.includes(word) || FALSE_WORDS.includes(word)
      ? null
      : "must be true or false";
  }
  const size = kind === "integer" ? Number(value) : value.length;
  if (kind === "integer" && !INTEGER.test(value)) return "must be a whole number";
  const unit = kind === "integer" ? "" : " characters long";
  if (rules.min != null && size < rules.min) return `must be at least ${rules.min}${unit}`;
  if (rules.max != null && size > rules.max) return `must be at most ${rules.max}${unit}`;
  return null;
}

/** Every problem of `values` against the editable `variables`, keyed by env name. */
export function checkAll(
  variables: TemplateVariable[],
  values: Record<string, string>,
): Record<string, string> {
  const problems: Record<string, string> = {};
  for (const variable of variables) {
    if (variable.user_editable === false) continue;
    const problem = checkValue(variable.rules ?? {}, values[variable.env] ?? "");
    if (problem !== null) problems[variable.env] = problem;
  }
  return problems;
}
