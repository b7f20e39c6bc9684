// The current page's guard against leaving with unsaved work: before an in-app navigation the
// router asks it whether to leave (it may ask the user). The browser's own reload or close is
// covered separately by the page's beforeunload handler.

let guard: (() => Promise<boolean>) | null = null;

export function setLeaveGuard(g: (() => Promise<boolean>) | null): void {
  guard = g;
}

export function leaveGuard(): (() => Promise<boolean>) | null {
  return guard;
}
