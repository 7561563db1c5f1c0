"""The wallet page's static files (index.html, wallet.js, qr.js, sw.js, the manifest and the icon),
served by the hub at ``/wallet``; a package only so they install as package data."""
