from django.urls import path

from store import apis

urlpatterns = [
    path("store/items", apis.StoreItemsApi.as_view()),
    path("store/items/search", apis.StoreSearchApi.as_view()),
    path("store/namespaces", apis.StoreNamespacesApi.as_view()),
]
