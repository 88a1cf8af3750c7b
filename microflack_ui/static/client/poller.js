// Poller: runs a task again and again, never two runs at once, so that
// requests never pile up (polling, the pinger).

import { POLL_INTERVAL } from './settings.js';

/** The pause after `failures` failures in a row: `first` after the
 * first, doubling with each one, at most `max`. (Every retry of the
 * client slows down alike.) */
export function backoff(first, failures, max) {
  return Math.min(first * 2 ** (failures - 1), max);
}

/**
 * Calls `task` (a function returning a promise) right away, then again
 * `interval` ms after each run has finished, until stopped. After
 * failures the pause doubles, up to `maxInterval`.
 * options: interval, maxInterval, onSuccess(), onError(error), timers
 * (an object with setTimeout/clearTimeout; the global ones by default).
 */
export class Poller {
  constructor(task, options) {
    const opts = options || {};
    this.task = task;
    this.interval = opts.interval || POLL_INTERVAL;
    this.maxInterval = Math.max(opts.maxInterval || this.interval,
      this.interval);
    this.onSuccess = opts.onSuccess || function () {};
    this.onError = opts.onError || function () {};
    this.timers = opts.timers || globalThis;
    this.running = false;
    this.failures = 0;
    this.timer = null;
    this.generation = 0;   // a run of a stopped poller schedules nothing
  }

  start() {
    if (this.running) {
      return;
    }
    this.running = true;
    this.failures = 0;
    this.generation += 1;
    this.run(this.generation);
  }

  stop() {
    this.running = false;
    this.generation += 1;
    if (this.timer !== null) {
      this.timers.clearTimeout(this.timer);
      this.timer = null;
    }
  }

  /** Pause before the next run. */
  delay() {
    if (!this.failures) {
      return this.interval;
    }
    return backoff(this.interval * 2, this.failures, this.maxInterval);
  }

  async run(generation) {
    this.timer = null;
    try {
      await this.task();
      this.failures = 0;
      if (generation === this.generation) {
        this.onSuccess();
      }
    } catch (error) {
      this.failures += 1;
      if (generation === this.generation) {
        this.onError(error);
      }
    }
    if (this.running && generation === this.generation) {
      this.timer = this.timers.setTimeout(
        () => this.run(generation), this.delay());
    }
  }
}
