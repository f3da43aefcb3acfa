// The guest's Request and Response before undici is loaded (microvm/guest/web.ts): a file of its
// own, so that nothing has linked the classes yet. One test, in order, because linking is for good.
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildRequest } from '../../microvm/guest/adapters.js';
import { LightRequest, LightResponse } from '../../microvm/guest/web.js';

describe('Request and Response before undici is loaded', () => {
  it('serve the light path, stand in for the rest, and link on first need', async () => {
    const req = buildRequest(
      { requestId: 'r', method: 'POST', path: '/p', query: 'q=1', headers: ['host', 'h.test'], timeoutMs: 1000, sourceIp: '127.0.0.1' },
      Buffer.from('body'),
    );
    expect(LightRequest.isLight(req)).toBe(true);
    expect(req).toBeInstanceOf(Request);
    expect(req.url).toBe('http://h.test/p?q=1');
    const res = new Response('hi', { status: 201, headers: { 'x-a': '1' } });
    expect(LightResponse.isLight(res)).toBe(true);
    expect(res).toBeInstanceOf(Response);
    expect(Object.prototype.toString.call(res)).toBe('[object Response]');
    expect({}).not.toBeInstanceOf(Response);
    // Feature detection sees the standard members, as on the real classes.
    for (const m of ['status', 'headers', 'json', 'ok']) expect(m in Response.prototype).toBe(true);
    for (const m of ['method', 'url', 'signal', 'formData']) expect(m in Request.prototype).toBe(true);
    expect(Object.create(null)).not.toBeInstanceOf(Request);
    // A subclass made now, before the link, still works once constructed.
    class Tagged extends Response {
      tag = 'mine';
    }
    // Inspecting links (as console.log would), and shows what the real object would.
    expect(inspect(new Response('shown', { status: 203 }))).toMatch(/^Response \{[\s\S]*status: 203/);
    // A stand-in links (this loads undici) and answers as the real member would.
    expect(await req.text()).toBe('body');
    expect(res.headers.get('x-a')).toBe('1');
    expect(await res.text()).toBe('hi');
    expect(await new Response('twice').clone().text()).toBe('twice');
    const t = new Tagged('sub', { status: 202 });
    expect(t).toBeInstanceOf(Response);
    expect(t).toBeInstanceOf(Tagged);
    expect([t.tag, t.status, await t.text()]).toEqual(['mine', 202, 'sub']);
    expect(Response.error().type).toBe('error');
    expect(Response.redirect('http://a.test/', 302).headers.get('location')).toBe('http://a.test/');
    // Linked: real objects are instances, and the light ones still are.
    const real = await fetch('data:text/plain,x').catch(() => undefined);
    if (real) expect(real).toBeInstanceOf(Response);
    expect(new Response('again')).toBeInstanceOf(Response);
    // On undici's prototype chain now, the stand-ins gone.
    expect(Object.getOwnPropertyNames(Response.prototype)).toEqual(['constructor']);
    expect(typeof Object.getPrototypeOf(Response.prototype).arrayBuffer).toBe('function');
  });
});
