// Strict field checking for isthmus's own kinds (Mesh, MeshLink), which have no generated model: every field
// not in the list is an error with a "did you mean", as Caddy refuses unknown fields.
import { closest } from "../schema/structural.ts";
import type { Checker, Obj, Path } from "./checker.ts";

export function unknownFields(c: Checker, o: Obj, at: Path, known: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (known.includes(k)) continue;
    const near = closest(k, known);
    c.error(
      [...at, k],
      `unknown field${near ? ` (did you mean "${near}"?)` : ""}; known: ${known.join(", ")}`,
    );
  }
}
