// Who is signed in (GET /api/v1/me): the token's role and what it may do. Pages hide the actions the
// role cannot use; the API still decides every call (hiding a button is a courtesy, not a control).

import { get } from "./api";

export interface Me {
  role: string;
  token_id: string;
  token_prefix: string;
  token_name: string;
  permissions: string[];
}

let me: Promise<Me | null> | null = null;

/** The caller, asked once per sign-in; null when the API cannot say (then every action is shown). */
export function whoAmI(): Promise<Me | null> {
  if (!me) me = get<Me>("/me").catch(() => null);
  return me;
}

export function forgetMe(): void {
  me = null;
}

/** Whether the signed-in role holds ``permission`` (true when unknown: the API will answer 403). */
export async function may(permission: string): Promise<boolean> {
  const caller = await whoAmI();
  return caller === null || caller.permissions.includes(permission);
}
