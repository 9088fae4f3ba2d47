/**
 * A tiny authoritative DNS server on 127.0.0.1 (dns2, UDP) for tests and the
 * bench: it serves TXT records from a zone given as a map, answers NXDOMAIN
 * for every other name, and does not answer at all for names marked 'silent'
 * (a look-up that times out).
 */
import dns2 from 'dns2';

const { Packet } = dns2;
/** RFC 1035 RCODE 3, "no such name" (dns2 3.0.0 has Packet.RCODE at run time, not in its types). */
const NXDOMAIN = 3;

/** name (lower case, no trailing dot) → its TXT records, or 'silent'. */
export type Zone = Map<string, string[] | 'silent'>;

export interface TestDns {
  /** `127.0.0.1:PORT`, for --dns-servers. */
  server: string;
  zone: Zone;
  /** Questions asked, `TYPE name`, in order. */
  queries: string[];
  close(): Promise<void>;
}

/** A TXT record's text as DNS character-strings of at most 255 bytes. */
function strings(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += 255) out.push(text.slice(i, i + 255));
  return out;
}

const typeName = (t: number): string => Object.entries(Packet.TYPE).find(([, v]) => v === t)?.[0] ?? String(t);

export async function startDns(zone: Zone = new Map()): Promise<TestDns> {
  const queries: string[] = [];
  const server = dns2.createServer({
    udp: true,
    handle: (request, send) => {
      const response = Packet.createResponseFromRequest(request);
      const [q] = request.questions;
      if (!q) return void send(response);
      const name = q.name.toLowerCase().replace(/\.$/, '');
      queries.push(`${typeName(q.type)} ${name}`);
      const records = zone.get(name);
      if (records === 'silent') return;
      if (!records) {
        response.header.rcode = NXDOMAIN;
      } else if (q.type === Packet.TYPE.TXT) {
        for (const text of records) {
          response.answers.push({ name: q.name, type: Packet.TYPE.TXT, class: Packet.CLASS.IN, ttl: 60, data: strings(text) } as unknown as (typeof response.answers)[number]);
        }
      } // another type of a name we know: NOERROR with no answer (ENODATA)
      void send(response);
    },
  });
  const addresses = await server.listen({ udp: { port: 0, address: '127.0.0.1' } });
  const port = addresses.udp!.port;
  return { server: `127.0.0.1:${port}`, zone, queries, close: () => server.close() };
}
