// Reactive props for component tests (runes work only in .svelte and .svelte.ts files).
export function reactive<T extends object>(o: T): T {
  const s = $state(o);
  return s;
}
