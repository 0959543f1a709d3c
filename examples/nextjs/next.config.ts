import type { NextConfig } from "next";

// The chatsync server the app talks to: the browser calls /api here, and Next.js passes it on.
const api = process.env.CHATSYNC_URL ?? "http://127.0.0.1:8080";

const nextConfig: NextConfig = {
  cacheComponents: true,
  partialPrefetching: true,
  agentRules: false,
  experimental: { agentUpgrade: false },
  async rewrites() {
    return [{ source: "/api/:path*", destination: `${api}/api/:path*` }];
  },
};

export default nextConfig;
