import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// The chatsync server the app talks to; `/api` is proxied there in `vite` and `vite preview`.
const api = { '/api': process.env.CHATSYNC_URL ?? 'http://127.0.0.1:8080' }

// https://vite.dev/config/
export default defineConfig({
  plugins: [react()],
  server: { proxy: api },
  preview: { proxy: api },
})
