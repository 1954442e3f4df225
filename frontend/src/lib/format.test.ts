import { describe, expect, it } from 'vitest';
import { droppedNote } from './format';

describe('droppedNote', () => {
  it('says how many earlier messages the server left out, one or many', () => {
    expect(droppedNote({ messages_dropped: 1 })).toEqual({ key: 'chat.droppedOne', n: 1 });
    expect(droppedNote({ messages_dropped: 958 })).toEqual({ key: 'chat.dropped', n: 958 });
  });

  it('is null when everything was sent or the server did not say', () => {
    expect(droppedNote({ messages_dropped: 0 })).toBeNull();
    expect(droppedNote({ messages_dropped: null })).toBeNull();
    expect(droppedNote({ ttft_ms: 3 })).toBeNull();
    expect(droppedNote(null)).toBeNull();
    expect(droppedNote(undefined)).toBeNull();
  });
});
