// The task flow as a live diagram: a node per place a task can be, with how many are there now,
// and an edge per transition, with how many times it happened since the counters started.
import { navigate } from "../router";
import { edgeCount } from "../live";
import type { QueueStatus } from "../types";

interface Node {
  id: string;
  label: string;
  x: number;
  y: number;
  href: string;
}

export const NODES: Node[] = [
  { id: "submit", label: "Submitted", x: 80, y: 90, href: "/tasks" },
  { id: "primary", label: "Primary", x: 270, y: 90, href: "/tasks?state=PENDING" },
  { id: "retry", label: "Retry", x: 270, y: 290, href: "/tasks?state=PENDING" },
  { id: "active", label: "Active", x: 480, y: 190, href: "/tasks?state=ACTIVE" },
  { id: "scheduled", label: "Scheduled", x: 480, y: 350, href: "/tasks?state=SCHEDULED" },
  { id: "completed", label: "Completed", x: 730, y: 60, href: "/tasks?state=COMPLETED" },
  { id: "failed", label: "Failed", x: 730, y: 190, href: "/tasks?state=FAILED" },
  { id: "dlq", label: "DLQ", x: 730, y: 320, href: "/tasks?state=DLQ" },
];

/** [from, to, bend]: bend curves an edge sideways (px), so opposite edges do not overlap. */
const EDGES: [string, string, number][] = [
  ["submit", "primary", 0],
  ["primary", "active", 0],
  ["retry", "active", 0],
  ["active", "primary", 40],
  ["active", "retry", -40],
  ["active", "completed", 0],
  ["active", "failed", 0],
  ["active", "dlq", 0],
  ["active", "scheduled", 0],
  ["scheduled", "retry", 0],
  ["dlq", "retry", -70],
];

const W = 120;
const H = 54;
const byId = new Map(NODES.map((n) => [n.id, n]));

export interface FlowCounts {
  status: QueueStatus | null;
  /** The counters, or null until they have been read. */
  counters: Record<string, number> | null;
}

export function nodeCount(id: string, { status, counters }: FlowCounts): number | null {
  if (id === "submit") return counters ? (counters.submitted ?? 0) : null;
  if (!status) return null;
  const { queues, states } = status;
  const values: Record<string, number | undefined> = {
    primary: queues.primary,
    retry: queues.retry,
    scheduled: queues.scheduled,
    dlq: queues.dlq,
    active: states.ACTIVE,
    completed: states.COMPLETED,
    failed: states.FAILED,
  };
  return values[id] ?? 0;
}

/** An edge's figure, or null until the counters have been read. */
export function edgeValue(from: string, to: string, counts: FlowCounts): number | null {
  return counts.counters ? edgeCount(counts.counters, `${from}>${to}`) : null;
}

/** Where the segment from a box's centre toward (tx, ty) leaves the box. */
function border(node: Node, tx: number, ty: number): [number, number] {
  const dx = tx - node.x;
  const dy = ty - node.y;
  const t = Math.min((W / 2 + 4) / Math.abs(dx || 1e-9), (H / 2 + 4) / Math.abs(dy || 1e-9));
  return [node.x + dx * t, node.y + dy * t];
}

function geometry(from: Node, to: Node, bend: number) {
  const mx = (from.x + to.x) / 2;
  const my = (from.y + to.y) / 2;
  const len = Math.hypot(to.x - from.x, to.y - from.y) || 1;
  const cx = mx + (-(to.y - from.y) / len) * bend * 2;
  const cy = my + ((to.x - from.x) / len) * bend * 2;
  const [sx, sy] = border(from, cx, cy);
  const [ex, ey] = border(to, cx, cy);
  // The label sits on the curve's midpoint (t = 0.5 of the quadratic).
  const lx = 0.25 * sx + 0.5 * cx + 0.25 * ex;
  const ly = 0.25 * sy + 0.5 * cy + 0.25 * ey;
  return { d: `M${sx},${sy} Q${cx},${cy} ${ex},${ey}`, lx, ly };
}

const fmt = (n: number | null) => (n === null ? "…" : n.toLocaleString());

export function FlowDiagram(counts: FlowCounts) {
  return (
    <figure className="flow">
      <div className="flow-scroll">
        <svg viewBox="0 0 860 440" role="group" aria-labelledby="flow-title flow-desc" className="flow-svg">
          <title id="flow-title">Task flow</title>
          <desc id="flow-desc">
            Nodes show how many tasks are in each place now; edges show how many times each transition happened.
            Select a node to list its tasks.
          </desc>
          <defs>
            <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" className="arrowhead" />
            </marker>
          </defs>
          {EDGES.map(([from, to, bend]) => {
            const g = geometry(byId.get(from)!, byId.get(to)!, bend);
            const value = edgeValue(from, to, counts);
            return (
              <g key={`${from}>${to}`} className="edge" data-edge={`${from}>${to}`}>
                <path d={g.d} markerEnd="url(#arrow)" />
                <g transform={`translate(${g.lx},${g.ly})`}>
                  <rect x={-22} y={-10} width={44} height={20} rx={10} className="edge-pill" />
                  <text key={value} className="edge-count pulse" textAnchor="middle" dominantBaseline="central">
                    {fmt(value)}
                  </text>
                </g>
              </g>
            );
          })}
          {NODES.map((node) => {
            const count = nodeCount(node.id, counts);
            return (
              <a
                key={node.id}
                href={node.href}
                className={`node node-${node.id}`}
                data-node={node.id}
                aria-label={`${node.label}: ${fmt(count)}. Show these tasks`}
                onClick={(event) => {
                  event.preventDefault();
                  navigate(node.href);
                }}
              >
                <rect x={node.x - W / 2} y={node.y - H / 2} width={W} height={H} rx={10} />
                <text x={node.x} y={node.y - 9} textAnchor="middle" className="node-label">
                  {node.label}
                </text>
                <text x={node.x} y={node.y + 14} textAnchor="middle" className="node-count">
                  {fmt(count)}
                </text>
              </a>
            );
          })}
        </svg>
      </div>
      <figcaption className="muted">
        Counts on the edges are how many times each transition happened since the counters started.
      </figcaption>
    </figure>
  );
}
