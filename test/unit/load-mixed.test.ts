// mixed's note on requests per function lists the functions that got the most requests, whatever
// their Zipf rank.
import { describe, expect, it } from 'vitest';
import { mixedNames, sentNote } from '../../load/scenarios/mixed.js';

describe('sentNote', () => {
  it('lists the five functions with the most requests, most first', () => {
    const names = mixedNames(7);
    // A draw where ranks 5 and 6 got more than ranks 1 to 4.
    const sent = [40, 5, 10, 0, 3, 20, 22];
    expect(sentNote(names, sent)).toBe('requests sent by function (most requests first): mixed-00 40.0%, mixed-06 22.0%, mixed-05 20.0%, mixed-02 10.0%, mixed-01 5.0%, …; 1 of 7 functions got none');
  });

  it('keeps rank order on ties and has no ellipsis when all are shown', () => {
    expect(sentNote(['a', 'b', 'c'], [1, 2, 1])).toBe('requests sent by function (most requests first): b 50.0%, a 25.0%, c 25.0%; 0 of 3 functions got none');
  });
});
