// Completed and failed tasks per second over the last 15 minutes: the server's recent history
// (per second for the last minute, per minute before it, drawn as that minute's average rate),
// then the live stream's transitions, drawn with uPlot (a small canvas chart library). The
// figures are also given as text for screen readers.
import { useEffect, useRef, useState } from "react";
import uPlot from "uplot";
import { series, WINDOW_SECONDS, type Throughput } from "../live";

function sum(values: number[], last: number): number {
  // Seconds drawn from a minute's figures are fractions; their sum is the minute's whole count.
  return Math.round(values.slice(-last).reduce((a, b) => a + b, 0));
}

/** False where there is no 2D canvas (a test DOM): the chart is left out, the text summary stays. */
function canDraw(): boolean {
  try {
    return document.createElement("canvas").getContext("2d") !== null;
  } catch {
    return false;
  }
}

function options(width: number): uPlot.Options {
  return {
    width,
    height: 220,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
    axes: [{}, { label: "tasks / s", size: 50 }],
    series: [
      {},
      { label: "completed", stroke: "#16a34a", fill: "rgba(22,163,74,0.15)", width: 1.5, points: { show: false } },
      { label: "failed", stroke: "#dc2626", fill: "rgba(220,38,38,0.12)", width: 1.5, points: { show: false } },
    ],
  };
}

export function ThroughputChart({ throughput }: { throughput: Throughput }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  // On the server's clock (the buckets are), not this browser's.
  const [, setTick] = useState(0); // a render a second, so the window slides
  const now = Math.floor((Date.now() + throughput.clockOffsetMs) / 1000);
  const data = series(throughput, now);

  useEffect(() => {
    const timer = setInterval(() => setTick((n) => n + 1), 1000);
    return () => clearInterval(timer);
  }, []);

  useEffect(() => {
    const element = box.current;
    if (!element || !canDraw()) return;
    plot.current = new uPlot(options(Math.max(280, element.clientWidth)), series(throughput, now), element);
    const fit = () => plot.current?.setSize({ width: Math.max(280, element.clientWidth), height: 220 });
    const resize = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(fit);
    resize?.observe(element);
    return () => {
      resize?.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  return (
    <div className="chart">
      <div ref={box} className="chart-canvas" aria-hidden="true" />
      <p className="muted" data-testid="throughput-summary">
        Last minute: {sum(data[1], 60)} completed, {sum(data[2], 60)} failed · last {WINDOW_SECONDS / 60} min:{" "}
        {sum(data[1], WINDOW_SECONDS)} completed, {sum(data[2], WINDOW_SECONDS)} failed
      </p>
      {throughput.exactFrom !== null && (
        <p className="muted small">
          From the server&apos;s history, then live; seconds more than a minute before the page connected are drawn at
          their minute&apos;s average.
        </p>
      )}
    </div>
  );
}
