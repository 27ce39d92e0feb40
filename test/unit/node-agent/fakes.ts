import type { Logger } from '../../../node-agent/src/log';
import type { Clock } from '../../../node-agent/src/poll';

export function memoryLog(): Logger & { lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const at = (level: string) => (message: string, fields: Record<string, unknown> = {}) => lines.push({ level, message, ...fields });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

/** Time that moves only when the code under test sleeps. */
export function fakeClock(start = Date.parse('2026-01-01T00:00:00Z')): Clock & { slept: number[] } {
  let now = start;
  const slept: number[] = [];
  return {
    slept,
    now: () => now,
    random: () => 0.5,
    sleep: async (ms) => {
      slept.push(ms);
      now += ms;
    },
  };
}
